"""Decentralized mode: gossip membership (SWIM + Lifeguard) and its wire format."""
