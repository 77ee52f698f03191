import ctypes, runpy, sys
libc = ctypes.CDLL(None)
print("mallopt", libc.mallopt(-3, 32 << 20), libc.mallopt(-1, 2**31 - 1), flush=True)
sys.argv = ["scripts/bench.py", *sys.argv[1:]]
runpy.run_path("scripts/bench.py", run_name="__main__")
