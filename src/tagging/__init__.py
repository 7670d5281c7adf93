"""Use trained models on any audio: model loading (experiments, bundles, blends), file tagging, timelines.

Models of every kind load as one type, `src.predict.ensemble.Ensemble`: the class list, the audio
front end the models were trained with, and one or more first-level *members* (an experiment's fold
models, with their tile size and step), plus stacking models for a named ensemble. Its prediction is,
as blend.py combines experiments, the geometric mean over each member's fold models, then the
geometric mean over the members.

Modules: `audio_tagger` (the Python API: `AudioTagger`), `loading` (experiments, bundles, blends,
named ensembles -> one `Ensemble`), `bundles` (the one bundle format: writing and reading),
`options` (tag.py's and demo.py's model options), `files`, `timeline`, `live`.

Models come from
- an experiment folder written by train_folds.py (`load_experiment`), or
- a single-file bundle written by export.py (`load_bundle`; plain dicts and
  tensors, loadable with `torch.load(weights_only=True)`), or
- several of either, blended (`blend`).

Three ways to use them:
- `tag_files`: whole files, trimmed like the training clips, sliding-window
  tiles batched across files (`src.predict.predictor.Predictor`);
- `tag_timeline`: long recordings streamed in chunks (`src.audio.streaming`), one
  prediction per window of `window` seconds every `hop` seconds, segments
  above a threshold and a picture, in flat memory;
- `live_tags`: a rolling buffer over any chunk source (microphone or replayed file).
"""
from src.audio.frontend import AudioReadError
from src.tagging.files import (AUDIO_EXTENSIONS, find_audio_files, format_table, out_prefixes, print_failures,
                               tag_files, top_k, write_results)
from src.tagging.live import format_live, live_tags
from src.tagging.bundles import make_bundle, read_bundle
from src.tagging.loading import blend, load_bundle, load_experiment
from src.tagging.options import add_model_args, load_tagger
from src.tagging.timeline import (SegmentTracker, Timeline, format_segments, plot_timeline, sliding_windows,
                                  tag_timeline)
from src.tagging.audio_tagger import AudioTagger  # the Python API

__all__ = ["AudioTagger", "load_experiment", "load_bundle", "make_bundle", "read_bundle",
           "blend", "add_model_args", "load_tagger", "AUDIO_EXTENSIONS", "find_audio_files", "tag_files", "top_k",
           "format_table", "write_results", "print_failures", "out_prefixes", "sliding_windows", "SegmentTracker",
           "Timeline", "tag_timeline", "plot_timeline", "format_segments", "live_tags", "format_live",
           "AudioReadError"]
