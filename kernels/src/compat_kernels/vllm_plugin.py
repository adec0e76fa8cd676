"""vLLM general-plugin entry point (group ``vllm.general_plugins``).

vLLM calls every general plugin's ``register()`` in each process it starts,
before building models. Importing compat_kernels is all that is needed there:
it loads the operator library and its fake impls, so
``torch.ops.compat_kernels.*`` resolve and trace in every worker. vLLM itself
is not imported, so this module also works where vLLM is not installed.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def register() -> None:
    import compat_kernels

    built_against = compat_kernels.__torch_build_version__
    if built_against != torch.__version__:
        # The wheel pins torch to its build minor, so this is a patch-level
        # difference: usually harmless, but worth seeing when ops misbehave.
        logger.warning(
            "compat_kernels was built against torch %s but torch %s is running",
            built_against,
            torch.__version__,
        )
    logger.debug("compat_kernels ops registered: %s", ", ".join(compat_kernels.OP_NAMES))
