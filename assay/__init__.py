"""assay: data selection and mixture optimization for language-model training data.

The installed namespace maps the repository's root folders: ``assay.pipeline`` (pipeline/),
``assay.scorers`` (scorers/), ``assay.selectors`` (selectors/), ``assay.kernels`` (kernels/).
"""

from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.1.0"

# In a source checkout (editable install, or Python started at the repository root) the subpackages
# live in sibling folders of this one. They have no __init__.py (a root ``selectors/__init__.py``
# would shadow the standard library's ``selectors``), and setuptools' editable finder cannot resolve
# a namespace child of a regular package, so the repository root joins this package's search path.
_here = _Path(__file__).resolve().parent
_root = _here.parent
if (_root / "pyproject.toml").is_file() and (_root / "pipeline").is_dir() and str(_here) in __path__:
    __path__.append(str(_root))


def __getattr__(name: str) -> object:
    """``assay.load_manifest``: the manifest's training stream as a ``datasets.IterableDataset``."""
    if name == "load_manifest":
        from assay.pipeline.export import load_manifest

        return load_manifest
    raise AttributeError(f"module 'assay' has no attribute {name!r}")
