"""`--landmarks`: a build fed the landmarks flowprep's own detector finds gives the crops of a normal build
without running detection; a pickle that would run a command, and a file of another length, are failure
records."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from flowprep.builder import build
from flowprep.config import BuildConfig, FlowConfig
from flowprep.dataset import ShardFile
from flowprep.decode import decode_gray
from flowprep.roi import MouthRoiExtractor

DIS = BuildConfig(flow=FlowConfig(backend="dis", preset="ultrafast"), shard_size=8, workers=2)
GOOD = ("bbaf2n", "brbk7n", "lbax4n")  # landmarks as .pkl, .npz, and .pkl with two frames left out
EVIL, SHORT = "lbbc2a", "lrwp9a"


class _RunsACommand:
    """What a hostile landmark file holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _link_clips(folder, names, grid_dir):
    folder.mkdir()
    for name in names:
        (folder / f"{name}.mpg").symlink_to(grid_dir / f"{name}.mpg")
    return folder


@pytest.fixture(scope="module")
def detected(grid_dir):
    """What flowprep's own tracker finds on each clip (NaN where it found no face)."""
    extractor = MouthRoiExtractor()
    return {name: extractor.track(decode_gray(grid_dir / f"{name}.mpg").frames).landmarks for name in GOOD}


@pytest.fixture(scope="module")
def builds(grid_dir, detected, ray_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("landmarks")
    plain_src = _link_clips(tmp / "plain_src", GOOD, grid_dir)
    src = _link_clips(tmp / "src", GOOD + (EVIL, SHORT), grid_dir)
    marks = tmp / "marks"
    marks.mkdir()
    as_list = lambda lm: [None if np.isnan(f).any() else f for f in lm]  # noqa: E731  the published form
    (marks / f"{GOOD[0]}.pkl").write_bytes(pickle.dumps(as_list(detected[GOOD[0]])))
    np.savez(marks / f"{GOOD[1]}.npz", landmarks=detected[GOOD[1]])
    gappy = as_list(detected[GOOD[2]])
    gappy[30] = gappy[31] = None
    (marks / f"{GOOD[2]}.pkl").write_bytes(pickle.dumps(gappy))
    marker = tmp / "command-ran"
    (marks / f"{EVIL}.pkl").write_bytes(pickle.dumps([_RunsACommand(marker)] * 75))
    np.savez(marks / f"{SHORT}.npz", landmarks=detected[GOOD[0]][:-1])  # 74 frames for a 75-frame video
    plain = build(plain_src, tmp / "plain", DIS, progress=False, executor=ray_cluster)
    imported = build(src, tmp / "imported", DIS.replace(landmarks=str(marks)), progress=False, executor=ray_cluster)
    return tmp, plain, imported, marker


def _clips(out):
    found = {}
    for path in sorted(out.glob("*.h5")):
        with ShardFile(path) as shard:
            for i in range(len(shard)):
                clip = shard.clip(i, ("gray",))
                found[clip["clip_id"]] = clip
    return found


def test_imported_landmarks_give_the_detected_crops(builds):
    tmp, plain, imported, _ = builds
    assert plain.exit_code == 0 and imported.exit_code == 3  # two clips fail on purpose
    a, b = _clips(tmp / "plain"), _clips(tmp / "imported")
    assert set(b) == set(GOOD)
    for name in GOOD[:2]:  # the same points: the same crops, frame for frame
        diff = np.abs(a[name]["gray"].astype(int) - b[name]["gray"].astype(int))
        assert diff.max() <= 1, name
        assert b[name]["qc"]["landmarks_imported"] == 1.0 and a[name]["qc"]["landmarks_imported"] == 0.0
        assert b[name]["qc"]["detections_run"] == 0.0 and a[name]["qc"]["detections_run"] >= 1.0
    gappy = b[GOOD[2]]
    assert gappy["qc"]["frames_interpolated"] == 2.0  # the two frames left out, filled from their neighbours
    far = np.r_[0:25, 37:75]  # beyond the smoothing window of the gap, nothing moved
    assert np.abs(a[GOOD[2]]["gray"][far].astype(int) - gappy["gray"][far].astype(int)).max() <= 1
    per_frame = {k: 1000 * r.stage_seconds["roi_s"] / r.frames for k, r in (("detected", plain), ("imported", imported))}
    print(f"ROI stage ms/frame: {per_frame}")  # the figure for the notes; no timing assertion on a shared machine


def test_hostile_pickle_and_wrong_length_are_failure_records(builds):
    tmp, _, _, marker = builds
    failures = {f["clip_id"]: f for f in map(json.loads, (tmp / "imported" / "failures.jsonl").read_text().splitlines())}
    assert set(failures) == {EVIL, SHORT}
    assert failures[EVIL]["stage"] == "landmarks" and "system" in failures[EVIL]["reason"]
    assert "nothing in it was run" in failures[EVIL]["reason"]
    assert not marker.exists()  # the command it names never ran
    assert failures[SHORT]["stage"] == "landmarks" and "74 frames, the video 75" in failures[SHORT]["reason"]


def test_the_hostile_pickle_is_real(tmp_path):
    """The same object through plain pickle does run its command: the check above can fail."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps([_RunsACommand(marker)]))
    assert marker.exists()
