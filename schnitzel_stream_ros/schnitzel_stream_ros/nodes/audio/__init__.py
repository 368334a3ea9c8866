"""Audio lane: file and capture sources of fixed-duration PCM chunks, resampling, loudness, voice
activity, and the audio event policy (LOUD_NOISE / VOICE through the one event builder)."""
