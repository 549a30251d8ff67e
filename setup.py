"""Packaging: the top-level folders install as subpackages of ``flanforge``."""

from setuptools import find_packages, setup

SUBPACKAGES = ("launcher", "mixtures", "model", "kernels")


def _packages():
    packages = ["flanforge"]
    package_dir = {"flanforge": "flanforge"}
    for top in SUBPACKAGES:
        package_dir[f"flanforge.{top}"] = top
        packages.append(f"flanforge.{top}")
        for sub in find_packages(where=top):
            packages.append(f"flanforge.{top}.{sub}")
            package_dir[f"flanforge.{top}.{sub}"] = f"{top}/{sub.replace('.', '/')}"
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(
    name="flanforge",
    version="0.1.0",
    description="Flan-style multi-task instruction fine-tuning on DeepSpeed ZeRO",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    install_requires=[
        # torch is installed by the set-up script first (CPU build here, the
        # user's CUDA build on a cluster); this range never upgrades it.
        "torch>=2.4",
        "deepspeed>=0.16",
        "transformers>=4.50",  # logits_to_keep (evaluation)
        "datasets>=3.0",
        "webdataset>=0.2.86",
        "sentencepiece>=0.2",
        "tensorboard>=2.15",
        "jinja2>=3.1",
        "pyyaml>=6.0",
        "tqdm>=4.66",
        "safetensors>=0.4",
        "pyarrow>=15",
        "rouge-score>=0.1.2",  # ROUGE as T5 computes it (evaluation)
        "matplotlib>=3.7",  # evaluation report plots
    ],
    extras_require={
        # accelerate: HF Trainer's runtime, for the side-by-side benchmark that CI runs in quick mode.
        "test": ["pytest>=8", "hypothesis>=6.100", "accelerate>=1.0"],
        "triton": ["triton>=3.0"],
    },
    entry_points={"console_scripts": ["flanforge=flanforge.launcher.cli:main"]},
)
