"""The shard schema: every dataset a shard file holds, in one table that the writer, the reader,
``flowprep verify`` and the batch collation iterate over.

A row says what a dataset is called, how it is stored, what it has one entry per, whether every
shard has it, and which part of flowprep produces it. ``per`` is one of

    clip     (N, ...)        one entry per clip, in clip order
    frame    (sum T, ...)    the clip's frames, rows ``offset[i]:offset[i+1]``
    pair     (sum T-1, ...)  pairs of consecutive frames, rows ``flow_offset[i]:flow_offset[i+1]``
    sample   (sum S,)        audio samples, rows ``audio_offset[i]:audio_offset[i+1]``
    index    (N+1,) int64    the offsets of one of the units above (``indexes`` names it)
    group    qc/<name> (N,)  one dataset per name, each per clip

Time-major datasets (frame, pair, sample) are all clips concatenated, chunked about one clip per
chunk. ``shape`` is what follows the leading axis; ``"S"`` stands for the ``roi_size`` attribute.
Several dtypes: the build configuration picks one (flow: ``--flow-dtype``). An optional row is
absent from shards built without what makes it (``--audio``) or written before it existed
(``text``, ``word_times``): readers find it by name, and old folders keep reading.

Adding a stream is one row here, plus the stage that fills the ``ClipResult`` field of the same
name (per-clip rows come from the result or its ``ClipRecord``): the writer stores it, the reader
serves it (``ShardFile.clip(i, streams=...)``), verify checks its shape and dtype, and collation
pads it along time. A new row needs no new ``format_version``: readers that predate it ignore it.

The file attributes are in ``ATTRS``; the README's "Shard layout" section shows this table.
"""

from __future__ import annotations

from dataclasses import dataclass

CLIP, FRAME, PAIR, SAMPLE, INDEX, GROUP = "clip", "frame", "pair", "sample", "index", "group"
TIME_UNITS = (FRAME, PAIR, SAMPLE)


@dataclass(frozen=True)
class Row:
    name: str
    dtypes: tuple[str, ...]  # "str" is a variable-length UTF-8 string
    per: str  # clip | frame | pair | sample | index | group
    shape: tuple = ()  # after the leading axis; "S" = the roi_size attribute
    optional: bool = False
    producer: str = ""  # what makes it
    doc: str = ""
    indexes: str = ""  # index rows: the unit whose rows they delimit
    fill: object = None  # stored for a clip that has no value (None: the clip must have one)

    @property
    def dtype(self) -> str:
        """What the writer stores when the configuration does not choose (the first dtype)."""
        return self.dtypes[0]

    def shape_for(self, roi_size: int) -> tuple[int, ...]:
        return tuple(roi_size if d == "S" else d for d in self.shape)


SCHEMA: tuple[Row, ...] = (
    Row("clip_id", ("str",), CLIP, producer="sources", doc="unique id: the path under --src, no suffix"),
    Row("split", ("str",), CLIP, producer="sources", doc="train, val, test, ..."),
    Row("word", ("str",), CLIP, producer="sources", doc="the class name (LRW's word); '' when unlabelled"),
    Row("source", ("str",), CLIP, producer="sources", doc="the layout that found the clip (lrw, grid, folder)"),
    Row("path", ("str",), CLIP, producer="sources", doc="the video the clip was read from"),
    Row("text", ("str",), CLIP, optional=True, fill="", producer="sources",
        doc="what is said (GRID: the sentence); '' when unknown; absent in the first format-1 shards"),
    Row("word_times", ("str",), CLIP, optional=True, fill="", producer="sources",
        doc="JSON [[word, start_s, end_s], ...] or ''; absent in the first format-1 shards"),
    Row("label", ("int32",), CLIP, producer="sources", doc="index into the manifest's classes; -1 unlabelled"),
    Row("length", ("int32",), CLIP, producer="decode", doc="T, the clip's frames"),
    Row("fps", ("float32",), CLIP, producer="decode", doc="frames per second of the video"),
    Row("boundary", ("float32",), CLIP, (2,), fill=float("nan"), producer="sources",
        doc="(start_s, end_s) of the spoken word; NaN when unknown"),
    Row("offset", ("int64",), INDEX, indexes=FRAME, producer="shards.writer",
        doc="rows of clip i in every per-frame dataset: offset[i]:offset[i+1]"),
    Row("flow_offset", ("int64",), INDEX, indexes=PAIR, producer="shards.writer",
        doc="rows of clip i in every per-pair dataset (one fewer than its frames)"),
    Row("qc", ("float32",), GROUP, producer="roi, flow, decode",
        doc="qc/<name> (N,): per-clip quality numbers (detection rate, jitter, flow saturation, ...)"),
    Row("gray", ("uint8",), FRAME, ("S", "S"), producer="roi", doc="grayscale mouth crops, lossless"),
    Row("landmarks", ("float16",), FRAME, (68, 2), producer="roi", doc="68 dlib points in crop coordinates"),
    Row("affine", ("float32",), FRAME, (2, 3), producer="roi", doc="source -> crop similarity per frame"),
    Row("flow", ("int8", "int16", "float16"), PAIR, (2, "S", "S"), producer="flow",
        doc="optical flow from frame t to t+1 (dx, dy); pixels = stored * flow_scale"),
    Row("audio_offset", ("int64",), INDEX, optional=True, indexes=SAMPLE, producer="shards.writer",
        doc="samples of clip i in audio: audio_offset[i]:audio_offset[i+1] (--audio)"),
    Row("audio_start", ("int64",), CLIP, optional=True, producer="decode",
        doc="index, in clip i's samples, of the start of its frame 0; 0 as written (--audio)"),
    Row("audio", ("int16",), SAMPLE, optional=True, producer="decode",
        doc="mono PCM at audio_rate; frame t covers samples [start + t*rate/fps, start + (t+1)*rate/fps) (--audio)"),
)


# Keys a read sample carries, beyond the stored streams, that run along the frames: padded with them.
SAMPLE_FRAME_KEYS = (
    "boundary",  # ShardFile.clip: 1 inside the spoken word, per frame
    "heatmaps",  # flowprep.transforms.KeypointHeatmaps
    "audio_mel",  # flowprep.transforms.AudioLogMel: per_frame mel frames per video frame
)

# File attributes: (name, meaning); those marked optional come with --audio.
ATTRS = (
    ("format_version", "the shard format (1); readers refuse a newer one"),
    ("flowprep_version", "the version that wrote the file"),
    ("config_fingerprint", "the build configuration's fingerprint, as in manifest.json"),
    ("plan_hash", "the clips this shard was planned to hold"),
    ("split", "the split of every clip in the file"),
    ("roi_size", "S, the crop side in pixels"),
    ("flow_backend", "the flow backend's name"),
    ("flow_dtype", "the stored flow dtype"),
    ("flow_scale", "pixels per stored flow unit"),
    ("audio_rate", "samples per second of audio (optional, --audio)"),
    ("audio_dtype", "int16 (optional, --audio)"),
)


# Everything below reads SCHEMA when called, so that the table is the only thing to change.

def rows(per: str | tuple[str, ...] | None = None) -> tuple[Row, ...]:
    """The rows with one entry per ``per`` (a unit or several; None: all), in table order."""
    wanted = (per,) if isinstance(per, str) else per
    return tuple(row for row in SCHEMA if wanted is None or row.per in wanted)


def row(name: str) -> Row:
    """The row of dataset ``name`` (KeyError when the table has none)."""
    for r in SCHEMA:
        if r.name == name:
            return r
    raise KeyError(name)


def streams() -> tuple[str, ...]:
    """The time-major datasets: what ``ShardFile.clip`` can read."""
    return tuple(r.name for r in rows(TIME_UNITS))


def offsets_name(unit: str) -> str:
    """The (N+1,) offsets dataset of a unit (frame, pair, sample)."""
    return next(r.name for r in rows(INDEX) if r.indexes == unit)


def time_major_keys() -> tuple[str, ...]:
    """Sample keys that run along a clip's frames (frame and pair streams, and SAMPLE_FRAME_KEYS)."""
    return tuple(r.name for r in rows((FRAME, PAIR))) + SAMPLE_FRAME_KEYS


def own_length_keys() -> dict[str, str]:
    """Sample keys on their own time axis (audio samples are not frames) -> the key of their lengths."""
    return {r.name: f"{r.name}_lengths" for r in rows(SAMPLE)}


def markdown_table() -> str:
    """The schema as the README shows it."""
    lines = ["| dataset | dtype | per | shape after the first axis | optional | made by | what it holds |",
             "|---|---|---|---|---|---|---|"]
    for row in SCHEMA:
        shape = "(" + ", ".join(str(d) for d in row.shape) + ("," if len(row.shape) == 1 else "") + ")"
        per = f"index of {row.indexes}" if row.per == INDEX else row.per
        lines.append(f"| `{row.name}` | {' or '.join(row.dtypes)} | {per} | {shape} | "
                     f"{'yes' if row.optional else 'no'} | {row.producer} | {row.doc.replace('|', '/')} |")
    return "\n".join(lines)
