def leap_year(year):
    return year % 4 == 0 and year % 100 != 0


"""
True for leap years of the Gregorian calendar.
Example: leap_year(2000) is True, leap_year(1900) is False
"""
