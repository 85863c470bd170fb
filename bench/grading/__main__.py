"""`python -m bench.grading`: see bench/grading/__init__.py."""

from bench.grading import main

main()
