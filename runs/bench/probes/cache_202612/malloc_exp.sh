cd /work/main
for env in "default" "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736"; do
  echo "== $env"
  if [ "$env" = default ]; then E=""; else E="$env"; fi
  env $E .venv/bin/python scripts/bench.py --architectures resnet18 --image-size 28 --precisions fp32 --sections training --repeats 15 --steps 1 --threads 2 --output /tmp/p/malloc_$(echo $env | cut -c1-7).json 2>&1 | grep "| training" | grep -E "\| (dense|csg|dense\+generator_gemms) \|" | cut -c1-300
done
