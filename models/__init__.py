"""Reference text-to-face producer: AttnGAN with a swappable text side (BiLSTM/DAMSM or CLIP).

Entry point: ``python -m models train|generate``. This package deliberately has no
import-time side effects (a top-level package named ``models`` can shadow others);
import its submodules explicitly.
"""
