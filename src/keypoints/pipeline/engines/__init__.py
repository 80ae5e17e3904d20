"""Where extraction runs: ``local`` (this process, decoding in threads) or ``ray`` (a Ray Data
pipeline over model actors, on one machine or a cluster). Both write the same shards.
"""
