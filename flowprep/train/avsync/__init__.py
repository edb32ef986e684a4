"""Cross audio-visual matching (Torfi et al., "3D convolutional neural networks for cross audio-visual
matching recognition", 2017): do a mouth clip and a piece of audio belong together in time?

Read in this order:

* clips.py: talking-face clips with their audio, from memory, videos (through ``roi``, as the build
  crops mouths) or shards built with ``--audio``;
* pairs.py: genuine pairs (the audio of the same frames) and impostors (shifted by ``shift_s``, 0.5 s,
  the paper's best), with the MFEC audio cube from ``flowprep.dataset.audio``;
* net.py: the coupled 3D/2D CNNs, the contrastive loss with a margin and online hard-pair selection;
* metrics.py: ROC AUC and equal error rate (the distance is the score: small = in sync);
* run.py: training and scoring in a run folder (checkpoint, resume, AMP, metrics.csv, TensorBoard).

Departures from the paper, for data this small: the video is given as motion (each pixel minus its mean
over the window, ``video_norm="motion"``), which removes the speaker's appearance; embeddings are
L2-normalised so the margin has a fixed scale.
"""

from .clips import AVClip, clips_from_shards, clips_from_videos, mouth_window
from .metrics import equal_error_rate, roc_auc
from .net import AVSyncNet, batch_pairs, contrastive_loss, select_hard_pairs
from .pairs import AVSyncPairs, audio_features, deltas
from .run import (TASK, AVSyncConfig, build_avsync_model, evaluate_avsync, load_avsync, pair_distances, train_avsync,
                  trained_on)

__all__ = ["AVClip", "AVSyncConfig", "AVSyncNet", "AVSyncPairs", "TASK", "audio_features", "batch_pairs",
           "build_avsync_model", "clips_from_shards", "clips_from_videos", "contrastive_loss", "deltas",
           "equal_error_rate", "evaluate_avsync", "load_avsync", "mouth_window", "pair_distances", "roc_auc",
           "select_hard_pairs", "train_avsync", "trained_on"]
