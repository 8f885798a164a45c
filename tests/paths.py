"""Paths the tests share: the checkout, the fixtures, and the real speech on this machine."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TINY = FIXTURES / "official_tiny"  # see fixtures/README.md
CHECKPOINT = TINY / "checkpoint.pth"
IO = TINY / "io.npz"
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")  # Debian pocketsphinx-testdata (LibriVox)
LINE = SPEECH / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s of real speech, 16 kHz
