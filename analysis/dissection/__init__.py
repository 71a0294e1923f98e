"""Preference dissection: which measured properties of an answer move a judge (GAIR's "Dissecting Human and LLM
Preferences", ACL 2024, on this project's own feature columns)."""
