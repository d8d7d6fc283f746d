from setuptools import find_packages, setup

setup(
    name='kdplugins',
    version='0.1.0',
    description='Knowledge distillation for single-image super-resolution as a BasicSR 1.4.2 plugin',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['kdplugins', 'kdplugins.*']),
    license='Apache-2.0',
    python_requires='>=3.8',
    # torch/torchvision and basicsr are installed first (see the Makefile): basicsr 1.4.2 builds only with
    # `pip install --no-build-isolation basicsr==1.4.2` once torch is present.
    install_requires=[
        'torch', 'torchvision', 'basicsr==1.4.2', 'lmdb', 'numpy', 'opencv-python', 'pyyaml', 'matplotlib',
        'scikit-image'
    ],
    # export: ONNX files and their onnxruntime checks (kdplugins.export, scripts/benchmark_export.py); torch's
    # TorchScript-based ONNX exporter is used, which needs no onnxscript (docs/deploy.md).
    extras_require={
        'test': ['pytest'],
        'export': ['onnx', 'onnxruntime']
    },
    entry_points={
        'console_scripts': [
            'kd-train=kdplugins.train:main', 'kd-test=kdplugins.test:main', 'kd-export=kdplugins.export:command_line',
            'kd-infer=kdplugins.infer:command_line', 'kd-download=kdplugins.download:command_line'
        ]
    },
)
