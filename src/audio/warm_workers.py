"""Imported by the fork server of the feature cache's pool (`src.audio.workers.process_pool`) and by nothing
else: importing it warms the fast front end, so every worker the server forks starts with librosa's lazily
loaded modules and the cached filterbank instead of paying ~1 s for them."""
from src.audio.workers import warm_up

warm_up("fast")
