"""Test doubles: the offline Hub-protocol server (`csg_hub.testing.hub_server`). Never imported by
`import csg_hub`; the test suite, the demo and `python -m csg_hub.testing.hub_server` import it."""
