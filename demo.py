"""Live tagging: the top tags of the last few seconds of sound, printed every second.

    python demo.py --experiment demo --data-dir data/demo              # default microphone
    python demo.py --model model.pt --file street.wav                  # replay a file in real time
    python demo.py --model model.pt --file street.wav --fast           # ... as fast as possible

The microphone needs the optional `sounddevice` package (pip install
sounddevice); it is imported only when the microphone is used. A file given
with --file goes through exactly the same code: a chunk source (microphone or
file) yields short mono chunks at the models' rate, a rolling buffer keeps the
last --buffer seconds, and every --interval seconds that buffer becomes a
log-mel and goes through the models (geometric mean over folds/experiments).
Ctrl-C stops.
"""
import argparse

from src.cli import run
from src.errors import UserError
from src.audio.streaming import FileSource, MicrophoneSource
from src.tagging import add_model_args, format_live, live_tags, load_tagger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--file", help="replay this audio file instead of listening to the microphone")
    parser.add_argument("--fast", action="store_true", help="with --file: do not wait for real time")
    parser.add_argument("--mic-device", help="input device name or index for sounddevice (default: system default)")
    parser.add_argument("--top-k", type=int, default=3, help="tags printed per update (default 3)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between updates (default 1.0)")
    parser.add_argument("--buffer", type=float, default=4.0, help="seconds of audio each update looks at (default 4)")
    parser.add_argument("--chunk", type=float, default=0.1, help="seconds per chunk read from the source (default 0.1)")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.buffer <= 0 or args.chunk <= 0:
        parser.error("--interval, --buffer and --chunk must be positive")
    if args.fast and not args.file:
        parser.error("--fast only applies to --file")
    return args


def make_source(args, sampling_rate):
    if args.file:
        return FileSource(args.file, sampling_rate, args.chunk, realtime=not args.fast)
    device = int(args.mic_device) if args.mic_device and args.mic_device.isdigit() else args.mic_device
    return MicrophoneSource(sampling_rate, args.chunk, device)


def main(argv=None) -> int:
    args = parse_args(argv)
    tagger = load_tagger(args)
    print(f"models: {tagger.describe()}")
    try:
        source = make_source(args, tagger.audio_config.sampling_rate)
        print(f"listening to {source}: top {args.top_k} tags of the last {args.buffer:g} s every {args.interval:g} s"
              + ("" if args.file else " (Ctrl-C stops)"), flush=True)
        for seconds, probs in live_tags(tagger, source, args.buffer, args.interval, args.batch_size):
            print(format_live(seconds, probs, tagger.classes, args.top_k), flush=True)
    except KeyboardInterrupt:
        print("stopped")
    except RuntimeError as exc:  # e.g. sounddevice missing, no input device
        raise UserError(str(exc)) from exc
    return 0


if __name__ == "__main__":
    run(main)
