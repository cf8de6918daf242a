/* everything is in conformance/shim/shim.h */
