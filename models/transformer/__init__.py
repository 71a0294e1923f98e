"""Transformer preference classifiers (BERT-family, Gemma-2, Llama-3.x) with LoRA/QLoRA, trained per fold.

Import submodules directly (`models.transformer.packing`, `.loading`, `.estimator`): torch loads only when used.
"""
