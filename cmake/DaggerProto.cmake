# dagger_proto_library(<name> PROTOS <file.proto>... [IMPORT_DIRS <dir>...])
#
# Turns .proto files into a static library <name>: protoc-c's message code
# (<file>.pb-c.c/h) and dagger-idlc's typed stubs (<file>.dg.c/h), linked
# with dagger::dagger-pb. Include "<file>.dg.h" (path relative to its
# import directory). IMPORT_DIRS are the -I roots (default: the current
# source directory); every proto must lie below one of them. Works in the
# dagger tree and, after find_package(dagger), in an outside project.
#
# dagger-idlc runs at build time: DAGGER_IDLC, when set, names the one to
# run (e.g. a dagger-idlc built for the build machine when cross
# compiling); otherwise dagger::dagger-idlc, through
# CMAKE_CROSSCOMPILING_EMULATOR (qemu-user) when it is built for another
# machine.
set(DAGGER_IDLC "" CACHE FILEPATH
	"dagger-idlc to run at build time (default: dagger::dagger-idlc)")
if(NOT DAGGER_PROTOC_C)
	find_program(DAGGER_PROTOC_C protoc-c)
	if(NOT DAGGER_PROTOC_C)
		message(FATAL_ERROR
			"dagger: protoc-c not found; install protobuf-c-compiler")
	endif()
endif()

function(dagger_proto_library name)
	cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "PROTOS;IMPORT_DIRS")
	if(NOT ARG_PROTOS OR ARG_UNPARSED_ARGUMENTS)
		message(FATAL_ERROR "dagger_proto_library(${name} PROTOS "
			"<file.proto>... [IMPORT_DIRS <dir>...])")
	endif()
	if(NOT ARG_IMPORT_DIRS)
		set(ARG_IMPORT_DIRS ${CMAKE_CURRENT_SOURCE_DIR})
	endif()
	set(out ${CMAKE_CURRENT_BINARY_DIR}/${name}.dg)
	set(incs)
	set(dirs)
	foreach(d ${ARG_IMPORT_DIRS})
		get_filename_component(d ${d} ABSOLUTE)
		list(APPEND dirs ${d})
		list(APPEND incs -I ${d})
	endforeach()
	set(abs_protos)
	set(outputs)
	foreach(p ${ARG_PROTOS})
		get_filename_component(abs ${p} ABSOLUTE)
		set(rel)
		foreach(d ${dirs})
			file(RELATIVE_PATH r ${d} ${abs})
			if(NOT r MATCHES "^\\.\\./")
				set(rel ${r})
				break()
			endif()
		endforeach()
		if(NOT rel)
			message(FATAL_ERROR "dagger_proto_library(${name}): "
				"${p} is not below any of IMPORT_DIRS")
		endif()
		string(REGEX REPLACE "\\.proto$" "" stem ${rel})
		list(APPEND abs_protos ${abs})
		list(APPEND outputs ${out}/${stem}.pb-c.c ${out}/${stem}.pb-c.h
			${out}/${stem}.dg.c ${out}/${stem}.dg.h)
	endforeach()
	if(DAGGER_IDLC)
		set(idlc ${DAGGER_IDLC})
		set(idlc_dep ${DAGGER_IDLC})
	else()
		set(idlc_dep dagger::dagger-idlc)
		# In the dagger tree CMake runs the target through the emulator
		# itself; an imported one (an installed dagger) needs it said.
		get_target_property(imported dagger::dagger-idlc IMPORTED)
		set(idlc dagger::dagger-idlc)
		if(imported AND CMAKE_CROSSCOMPILING)
			if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
				message(FATAL_ERROR "dagger_proto_library(${name}): "
					"cross compiling, dagger::dagger-idlc cannot run "
					"here: set DAGGER_IDLC to a dagger-idlc for this "
					"machine, or CMAKE_CROSSCOMPILING_EMULATOR")
			endif()
			set(idlc ${CMAKE_CROSSCOMPILING_EMULATOR}
				$<TARGET_FILE:dagger::dagger-idlc>)
		endif()
	endif()
	add_custom_command(OUTPUT ${outputs}
		COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
		COMMAND ${idlc} --protoc ${DAGGER_PROTOC_C} ${incs}
			--out ${out} ${abs_protos}
		DEPENDS ${abs_protos} ${idlc_dep}
		COMMENT "dagger-idlc ${name}"
		VERBATIM)
	add_library(${name} STATIC ${outputs})
	# protoc-c initialises a oneof's union with {0}: a oneof whose first
	# member is bytes (every proto3 optional bytes field) trips it.
	target_compile_options(${name} PRIVATE
		$<$<C_COMPILER_ID:GNU,Clang>:-Wno-missing-braces>)
	target_include_directories(${name} PUBLIC ${out})
	target_link_libraries(${name} PUBLIC dagger::dagger-pb)
	set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
