"""Independent references (numpy models, closed forms) the tests check agentc against."""
