"""flanforge: Flan-style multi-task instruction fine-tuning on DeepSpeed ZeRO.

The package's subpackages live in the repository's top-level folders
(``launcher/``, ``mixtures/``, ``model/``, ``kernels/``); ``setup.py`` maps them
under this one import namespace so no bare ``kernels`` or ``model`` module is
ever installed.
"""

__version__ = "0.1.0"
