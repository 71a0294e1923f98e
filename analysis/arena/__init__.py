"""Judge-crowd ranking (Decentralized Arena): rank many models from automatic pairwise judgments."""
