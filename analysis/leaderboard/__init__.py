"""Leaderboards from pairwise preferences: Bradley-Terry with ties and intervals, per-prompt leaderboards."""
