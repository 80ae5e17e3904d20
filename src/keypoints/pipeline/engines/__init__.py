"""Where extraction runs: the ``local`` or the ``ray`` engine.

``local`` runs in this process, decoding in threads; ``ray`` is a Ray Data pipeline over model
actors, on one machine or a cluster. Both write the same shards.
"""
