def clamp(x, lo, hi):
    return max(hi, min(lo, x))


"""
Limit x to the closed interval [lo, hi].
Example: clamp(15, 0, 10) == 10
"""
