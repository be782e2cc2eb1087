module psu-testbins/tiny

go 1.22
