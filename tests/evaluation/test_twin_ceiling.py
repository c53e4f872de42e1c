"""The perfect-swap reference: B performing A's motion (same synth seed) follows A's mouth; B of another seed not."""

from __future__ import annotations

import pytest

from evaluation.face_measure import FaceMeasurer
from evaluation.twin_ceiling import main, measure_person, pair_figures

FRAMES = 48  # seed 103 starts talking near frame 20: both closed and open mouths in 48 frames


def test_a_twin_follows_the_mouth_and_another_seed_does_not() -> None:
    with FaceMeasurer() as measurer:
        a = measure_person("a", 103, FRAMES, 15.0, measurer)
        twin = measure_person("b", 103, FRAMES, 15.0, measurer)
        stranger = measure_person("b", 104, FRAMES, 15.0, measurer)
    same = pair_figures(103, a, twin)
    other = pair_figures(103, a, stranger)
    assert same.pairs >= FRAMES - 2
    assert same.mouth.correlation is not None and same.mouth.correlation > 0.8
    assert other.mouth.correlation is not None and other.mouth.correlation < 0.5


def test_too_few_frames_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--frames", "2"])
    assert info.value.code == 2 and "--frames" in capsys.readouterr().err
