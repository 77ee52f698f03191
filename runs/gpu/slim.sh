#!/usr/bin/env bash
# The device tool sends every tracked file, and the committed weights (the dense parent, the zoo folders) put
# the tree over the 64 MiB a call may carry. `slim.sh on` untracks every tracked *.safetensors in the index
# only (files stay on disk; .git/info/exclude keeps them from travelling as untracked files) for the call;
# `slim.sh off` tracks them again. Commit nothing in between.
set -eu
LIST=.git/slim-files
case ${1:-} in
  on)
    git ls-files '*.safetensors' > "$LIST"
    xargs -a "$LIST" git rm -q --cached
    sed 's|^|/|' "$LIST" >> .git/info/exclude ;;
  off)
    grep -v -x -F -f <(sed 's|^|/|' "$LIST") .git/info/exclude > .git/info/exclude.new || true
    mv .git/info/exclude.new .git/info/exclude
    xargs -a "$LIST" git add -f
    rm "$LIST" ;;
  *) echo "usage: bash runs/gpu/slim.sh on|off" >&2; exit 2 ;;
esac
git status --short | head -3
