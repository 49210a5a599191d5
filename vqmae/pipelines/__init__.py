"""Entry points, one module per stage: thin ``main(argv)`` wrappers over importable functions.

Run as ``vqmae <stage>``, ``python -m vqmae.pipelines.<stage>`` or
``accelerate launch -m vqmae.pipelines.<stage>``.
"""
