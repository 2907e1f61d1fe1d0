"""Configuration in one place: where things live, overridable by environment."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_dir():
    """The read-only test/CI data folder (GENCNN_SHARED, default ../shared)."""
    return os.environ.get("GENCNN_SHARED",
                          os.path.join(os.path.dirname(REPO_ROOT), "shared"))


def data_dir():
    """Where tools write LMDBs and downloads (GENCNN_DATA, default ./data)."""
    return os.environ.get("GENCNN_DATA", os.path.join(REPO_ROOT, "data"))



def available_memory():
    """Bytes of memory available to a new allocation (Linux's MemAvailable),
    else None: what the tools check a big run's need against before
    allocating it."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
