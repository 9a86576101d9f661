def longest_run(xs):
    best = 0
    current = 0
    previous = object()
    for x in xs:
        current = current + 1 if x == previous else 1
        previous = x
        best = max(best, current)
    return best
