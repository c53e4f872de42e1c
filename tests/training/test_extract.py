"""`swapstream extract`: faces from a synthetic video, bad inputs (named, nothing written), blur skipping, resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from faces.align import TEMPLATE_5
from faces.errors import InputError
from faces.media import iter_video_frames, write_video
from swapstream.cli import main as swapstream_main
from tests.fixtures.faces import SyntheticVideo
from training.errors import ExtractError
from training.extract import METADATA_NAME, STATE_NAME, ExtractConfig, extract_faces, plan_sources


def _records(folder: Path) -> list[dict]:
    lines = (folder / METADATA_NAME).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _face_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png")}


def test_synthetic_video_yields_aligned_faces(synthetic_faceset_a: Path, synthetic_clip_a: SyntheticVideo) -> None:
    records = _records(synthetic_faceset_a)
    state = json.loads((synthetic_faceset_a / STATE_NAME).read_text())

    assert len(records) >= 90, f"only {len(records)} of 100 synthetic frames gave a face"
    assert _face_files(synthetic_faceset_a) == {r["file"] for r in records}
    assert state["summary"]["faces_written"] == len(records)
    assert state["summary"]["frames_processed"] == 100
    assert state["counts"]["frames"] == 100
    first = records[0]
    assert set(first) >= {"file", "source", "frame", "face_index", "score", "size", "matrix", "keypoints", "landmarks"}
    assert first["source"] == str(synthetic_clip_a.path.resolve())
    assert np.asarray(first["landmarks"]).shape == (468, 2)
    crop = cv2.imread(str(synthetic_faceset_a / first["file"]))
    assert crop.shape == (128, 128, 3)

    # Crops are aligned: the detected eyes sit on the template, and (independently) the renderer's ground-truth
    # eyes, mapped through each record's matrix, land within a few pixels of the template too.
    errors = []
    for record in records:
        matrix = np.asarray(record["matrix"])
        truth = synthetic_clip_a.keypoints[record["frame"]]
        truth_in_crop = truth @ matrix[:, :2].T + matrix[:, 2]
        errors.append(np.linalg.norm(truth_in_crop[:2] - TEMPLATE_5[:2] * 128, axis=1).mean())
        np.testing.assert_allclose(np.asarray(record["keypoints"])[:2], TEMPLATE_5[:2] * 128, atol=6.0)
    assert float(np.median(errors)) < 4.0, f"ground-truth eyes are {np.median(errors):.1f} px off the template"


def test_resume_after_stop_gives_the_same_set_without_duplicates(
    synthetic_video_a: Path, synthetic_faceset_a: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    config = ExtractConfig(sources=(synthetic_video_a,), out=out, max_frames=50, progress=False)

    first = extract_faces(config)
    assert first.stopped_early and first.frames_processed == 50
    state = json.loads((out / STATE_NAME).read_text())
    assert state["sources"][str(synthetic_video_a.resolve())]["next_frame"] == 50
    assert max(r["frame"] for r in _records(out)) <= 49

    second = extract_faces(ExtractConfig(sources=(synthetic_video_a,), out=out, progress=False))
    assert not second.stopped_early
    assert second.frames_already_done == 50 and second.frames_processed == 50

    records = _records(out)
    keys = [(r["source"], r["frame"], r["face_index"]) for r in records]
    assert len(keys) == len(set(keys)), "faces.jsonl has duplicate faces"
    full_run = {(r["frame"], r["face_index"]) for r in _records(synthetic_faceset_a)}
    assert {(r["frame"], r["face_index"]) for r in records} == full_run
    assert _face_files(out) == _face_files(synthetic_faceset_a)

    # A third run finds everything done and changes nothing.
    third = extract_faces(ExtractConfig(sources=(synthetic_video_a,), out=out, progress=False))
    assert third.frames_processed == 0 and len(_records(out)) == len(records)


def test_a_second_clip_of_the_same_name_added_later_keeps_the_first_ones_faces(
    synthetic_video_a: Path, tmp_path: Path
) -> None:
    # Growing a face set with another folder's a.mp4 must not overwrite the first a.mp4's crops nor list a file twice.
    out = tmp_path / "grown"
    extract_faces(ExtractConfig(sources=(synthetic_video_a,), out=out, every=10, progress=False))
    first_records = _records(out)
    first_bytes = {r["file"]: (out / r["file"]).read_bytes() for r in first_records}
    other = tmp_path / "elsewhere" / synthetic_video_a.name
    other.parent.mkdir()
    mirrored = [frame[:, ::-1].copy() for index, frame in iter_video_frames(synthetic_video_a) if index < 30]
    write_video(other, mirrored, fps=15)

    extract_faces(ExtractConfig(sources=(other,), out=out, every=10, progress=False))

    records = _records(out)
    files = [r["file"] for r in records]
    assert len(files) == len(set(files)), "faces.jsonl lists a crop twice"
    assert _face_files(out) == set(files)
    assert {r["source"] for r in records} == {str(synthetic_video_a.resolve()), str(other.resolve())}
    for name, data in first_bytes.items():
        assert (out / name).read_bytes() == data, f"{name} of the first clip was overwritten"
    second = [r["file"] for r in records if r["source"] == str(other.resolve())]
    assert second and all(name.startswith(f"{synthetic_video_a.stem}-2_") for name in second)


def test_resume_repairs_a_torn_record_and_rewrites_its_face(synthetic_faceset_a: Path, tmp_path: Path) -> None:
    """A crash between the PNG and its record (or mid-record) loses nothing and duplicates nothing."""
    records = _records(synthetic_faceset_a)
    kept = records[:5]
    source = Path(kept[0]["source"])
    out = tmp_path / "crashed"
    out.mkdir()
    for record in records[:6]:  # the 6th face's PNG exists, but its record was torn mid-write
        (out / record["file"]).write_bytes((synthetic_faceset_a / record["file"]).read_bytes())
    torn = json.dumps(records[5])[:40]
    (out / METADATA_NAME).write_text("".join(json.dumps(r) + "\n" for r in kept) + torn)
    (out / ".leftover.png.tmp").write_bytes(b"half a png")
    settings = {"size": 128, "every": 1, "min_sharpness": 15.0, "max_faces": 1, "min_score": 0.5}
    resume_at = kept[-1]["frame"]  # the state was last saved before this frame finished
    state = {
        "version": 1,
        "settings": settings,
        "sources": {str(source): {"stem": source.stem, "kind": "video", "next_frame": resume_at, "done": False}},
        "counts": {"frames": resume_at, "no_face": 0, "blurry": 0},
        "summary": None,
    }
    (out / STATE_NAME).write_text(json.dumps(state))

    extract_faces(ExtractConfig(sources=(source,), out=out, max_frames=3, progress=False))

    records_now = _records(out)
    frames = [r["frame"] for r in records_now]
    assert frames == sorted(set(frames)), "duplicate or out-of-order records after resume"
    assert frames == [r["frame"] for r in records[:7]]  # frames 4, 5, 6 were (re)done
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", r"source not found: .*no_such_clip\.mp4"),
        ("unreadable_video", r"broken_clip\.mp4"),
        ("empty_folder", r"no image files .* in folder .*empty_folder"),
        ("not_an_image", r"not a readable image: .*fake_photo\.jpg"),
        ("bad_image_in_folder", r"not a readable image: .*photos.*zz_broken\.png"),
        ("unknown_file", r"neither a readable image nor a readable video: .*notes\.txt"),
    ],
)
def test_bad_input_names_the_path_exits_nonzero_and_writes_nothing(
    case: str, message: str, tmp_path: Path, synthetic_video_a: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {
        "missing": tmp_path / "no_such_clip.mp4",
        "unreadable_video": tmp_path / "broken_clip.mp4",
        "empty_folder": tmp_path / "empty_folder",
        "not_an_image": tmp_path / "fake_photo.jpg",
        "bad_image_in_folder": tmp_path / "photos",
        "unknown_file": tmp_path / "notes.txt",
    }[case]
    if case == "unreadable_video":
        bad.write_bytes(b"\x1a\x45\xdf\xa3" + b"garbage" * 500)
    elif case == "empty_folder":
        bad.mkdir()
    elif case == "not_an_image":
        bad.write_text("I am a text file wearing a .jpg suffix")
    elif case == "bad_image_in_folder":
        bad.mkdir()
        cv2.imwrite(str(bad / "good.png"), np.full((32, 32, 3), 128, np.uint8))
        (bad / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    elif case == "unknown_file":
        bad.write_text("hello")
    out = tmp_path / "faceset"

    # The good video comes first: a run that wrote as it went would already have written its faces.
    code = swapstream_main(["extract", str(synthetic_video_a), str(bad), "--out", str(out), "--no-progress"])

    assert code != 0
    err = capsys.readouterr().err
    assert err.startswith("swapstream extract: error: ")
    assert re.search(message, err), err
    assert not out.exists(), "nothing may be written when a source is bad"


def test_bad_input_leaves_an_existing_face_set_untouched(synthetic_faceset_a: Path, tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in synthetic_faceset_a.iterdir()}
    with pytest.raises(InputError, match="missing_folder"):
        extract_faces(ExtractConfig(sources=(tmp_path / "missing_folder",), out=synthetic_faceset_a, progress=False))
    assert {p.name: p.stat().st_mtime_ns for p in synthetic_faceset_a.iterdir()} == before


def test_changed_settings_are_refused_naming_the_flag(synthetic_faceset_a: Path, synthetic_video_a: Path) -> None:
    with pytest.raises(ExtractError, match=r"--size 128"):
        extract_faces(ExtractConfig(sources=(synthetic_video_a,), out=synthetic_faceset_a, size=64, progress=False))


@pytest.mark.parametrize(
    ("flag", "value"), [("--size", "8"), ("--every", "0"), ("--max-faces", "0"), ("--min-sharpness", "-1")]
)
def test_bad_flags_are_named(flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = swapstream_main(["extract", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    assert code == 1
    assert flag in capsys.readouterr().err


def test_blurry_faces_are_skipped_and_counted(tmp_path: Path) -> None:
    from faces.synthetic import IDENTITY_B, render_sequence

    frames = render_sequence(IDENTITY_B, 6, (320, 240), seed=3)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, frame in enumerate(frames):
        image = frame.frame if i % 2 == 0 else cv2.GaussianBlur(frame.frame, (0, 0), 4)
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    blank = np.full((240, 320, 3), 90, np.uint8)
    cv2.imwrite(str(folder / "wall.png"), blank)
    out = tmp_path / "set"

    summary = extract_faces(ExtractConfig(sources=(folder,), out=out, progress=False))

    assert summary.frames_processed == 7
    assert summary.frames_without_face == 1
    assert summary.faces_blurry >= 2, summary
    assert summary.faces_written == 3
    assert sorted(_face_files(out)) == ["img0_f000000_0.png", "img2_f000000_0.png", "img4_f000000_0.png"]
    assert all(r["sharpness"] >= 15.0 for r in _records(out))


def test_record_that_lost_its_newline_is_kept_and_the_next_starts_a_new_line(tmp_path: Path) -> None:
    from training.extract_writer import load_written as _load_written

    meta = tmp_path / METADATA_NAME
    meta.write_text('{"source": "s", "frame": 0, "face_index": 0}\n{"source": "s", "frame": 1, "face_index": 0}')
    assert _load_written(meta) == {("s", 0, 0), ("s", 1, 0)}
    assert meta.read_text().endswith("}\n")


def test_out_folder_that_is_a_source_is_refused(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "face.png"), np.full((16, 16, 3), 50, np.uint8))
    with pytest.raises(ExtractError, match="also a source folder"):
        extract_faces(ExtractConfig(sources=(tmp_path,), out=tmp_path, progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]


def test_same_stem_from_two_folders_gets_unique_names(tmp_path: Path) -> None:
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "face.png"), np.full((16, 16, 3), 50, np.uint8))
    sources = plan_sources([tmp_path / "x", tmp_path / "y", tmp_path / "x" / "face.png"])
    assert [s.stem for s in sources] == ["face", "face-2"]
