# Benchmark drivers (scripts); nothing to build.
