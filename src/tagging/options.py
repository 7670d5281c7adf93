"""The model options of tag.py and demo.py (--experiment/--model/--ensemble, device, step, batch, amp)
and the models they name."""
from src.ensembles import ENSEMBLES
from src.predict.predictor import AMP_CHOICES
from src.tagging.loading import load_models


def add_model_args(parser):
    """--experiment/--model/--data-dir/--device/--step/--batch-size, shared by tag.py and demo.py."""
    group = parser.add_argument_group("models (repeat --experiment/--model to blend them)")
    group.add_argument("--experiment", action="append", default=[], metavar="NAME",
                       help="experiment folder <data>/experiments/NAME (all its fold models)")
    group.add_argument("--model", action="append", default=[], metavar="BUNDLE.pt",
                       help="model bundle written by export.py (no experiment folder needed); an ensemble "
                            "bundle (export.py --ensemble) is used alone")
    group.add_argument("--ensemble", choices=sorted(ENSEMBLES),
                       help="a whole named ensemble (src/ensembles.py): first level, stacking and blend, "
                            "from the experiment folders; used alone")
    group.add_argument("--data-dir", help="data root holding experiments/ (default: $FSAT_DATA_DIR or ./data)")
    group.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    group.add_argument("--step", type=int, help="tile step in frames (default: each model's test step: an "
                       "experiment's test_tile_step, a bundle's tile_step)")
    group.add_argument("--batch-size", type=int, default=128, help="tiles per batch (default 128; a CPU forward "
                       "pass takes 16 of them at a time)")
    group.add_argument("--amp", choices=AMP_CHOICES,
                       help="precision of the networks (src/precision.py). Default for --experiment/--model: "
                       "'auto' = bf16 autocast on a CPU with native bf16 (AVX512-BF16, AMX), else fp32; on CUDA "
                       "the card's (bf16 from compute capability 8.0, fp16 on 7.x, fp32 below). Default for "
                       "--ensemble and ensemble bundles: 'none' = fp32, as the 2019 kernel made its test "
                       "predictions. 'bf16' (never on a GPU without native bf16), 'fp16' (CUDA), 'none' = fp32")


def load_tagger(args):
    """The models of tag.py's / demo.py's --experiment, --model and --ensemble arguments (`load_models`)."""
    return load_models(args.experiment, args.model, getattr(args, "ensemble", None), args.data_dir, args.device,
                       args.step, args.batch_size, getattr(args, "amp", None))
