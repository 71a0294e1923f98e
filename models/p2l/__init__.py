"""Prompt-to-Leaderboard (Frick et al., 2025): a model that reads only the prompt and gives every model a
Bradley-Terry coefficient (plus a tie parameter), trained on battles with the pairwise likelihood."""
