def longest_run(xs):
    best = 0
    current = 0
    previous = object()
    for x in xs:
        current = current + 1 if x == previous else 1
        previous = x
    best = max(best, current)
    return best


"""
Length of the longest run of equal consecutive items.
Example: longest_run([1, 1, 2, 2, 2, 1]) == 3
"""
