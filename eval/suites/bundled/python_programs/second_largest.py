def second_largest(xs):
    values = sorted(xs)
    return values[-2]


"""
The second largest distinct value of a list with at least two distinct values.
Example: second_largest([4, 9, 9, 2]) == 4
"""
