"""Speed benchmarks: hipot against the official HIENet code and peer models (`hipot bench`)."""
