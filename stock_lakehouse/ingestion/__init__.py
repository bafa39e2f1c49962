"""Getting Alpha Vantage payloads (live, recorded or synthetic) and parsing them into bars."""
