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

