"""Cluster mode: Raft leadership, membership, keys and (later) gossip."""
