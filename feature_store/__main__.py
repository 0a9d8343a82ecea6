"""`python -m feature_store --root DIR ls | inspect | validate | diff | gc` (see feature_store/cli.py)."""
import sys

from feature_store.cli import main

sys.exit(main())
