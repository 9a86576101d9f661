def rotate_right(xs, k):
    if not xs:
        return []
    k %= len(xs)
    return xs[k:] + xs[:k]


"""
Rotate a list k places to the right.
Example: rotate_right([1, 2, 3, 4], 1) == [4, 1, 2, 3]
"""
