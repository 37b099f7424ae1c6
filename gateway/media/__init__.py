"""Live video consultations on the gateway: cameras, the WebRTC relay to remote participants, recordings.

Not signalling policy (who may join is HQ's decision) and not HQ's side: `hq.calls` and `hq.recordings`.
"""
