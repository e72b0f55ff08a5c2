from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / f"{name}.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="hear-atst",
    version="0.1.0",
    description="ATST-Frame / ATST-Clip audio encoders for HEAR, SUPERB (s3prl) and pre-training",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["atst", "atst.*", "hear_atst", "hear_atst.*", "s3prl_upstream",
                                    "s3prl_upstream.*", "pretrain", "pretrain.*", "downstream", "downstream.*"]),
    package_data={"atst": ["manifests/*.json"], "s3prl_upstream": ["configs/*.yaml", "configs/**/*.yaml"]},
    install_requires=requirements("core"),
    extras_require={
        "hear": requirements("hear"),
        "s3prl": requirements("s3prl"),
        "pretrain": requirements("pretrain"),
        "downstream": requirements("downstream"),
        "onnx": requirements("onnx"),
        "dev": requirements("dev"),
    },
    entry_points={
        "console_scripts": [
            "atst = atst.cli:main",
            "atst-hear = hear_atst.launcher:main",
            "atst-s3prl = s3prl_upstream.launcher:main",
            "atst-pretrain = pretrain.cli:main",
            "atst-downstream = downstream.cli:main",
        ]
    },
)
