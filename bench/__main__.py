"""``python -m bench`` runs the benchmark suite."""

from bench.run import main

if __name__ == "__main__":
    main()
