def running_sum(xs):
    out = []
    total = xs[0] if xs else 0
    for x in xs:
        total += x
        out.append(total)
    return out


"""
Prefix sums of a list of numbers.
Example: running_sum([1, 2, 3]) == [1, 3, 6]
"""
