import sys
from pathlib import Path

# The end-to-end harness (real gunicorn on the run's database) is the service suite's.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
