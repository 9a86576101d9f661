def median(xs):
    ys = sorted(xs)
    mid = len(ys) // 2
    if len(ys) % 2 == 1:
        return ys[mid]
    return (ys[mid] + ys[mid + 1]) / 2


"""
Median of a non-empty list of numbers (mean of the two middle values for even lengths).
Example: median([3, 1, 4, 2]) == 2.5
"""
