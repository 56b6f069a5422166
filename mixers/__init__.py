"""Mix optimisation (token counting, mixture sampling, proxy training, regression, final shards).

Not built yet: see the mix issue. The package exists so the layout of the design card holds.
"""
