"""Control loops: cycle breakers (Delay, InitialValue), a rate gate, a PID controller, a simulated plant."""
