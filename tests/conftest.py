import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").rglob("*.nn"))

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)


def spec_id(p: Path) -> str:
    return p.stem


@pytest.fixture
def root() -> Path:
    return ROOT
